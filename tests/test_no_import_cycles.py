"""No import cycle inside ``trio_dwex``: the layers contract keeps packages apart, this keeps
modules apart too (a cycle inside a layer is how the hub and its Redis backend once tangled)."""

from __future__ import annotations

import itertools

import grimp


def test_no_two_modules_import_each_other_even_indirectly() -> None:
    graph = grimp.build_graph("trio_dwex")
    cycles = [
        (first, second)
        for first, second in itertools.combinations(sorted(graph.modules), 2)
        if graph.find_shortest_chain(first, second) and graph.find_shortest_chain(second, first)
    ]
    assert len(graph.modules) > 40  # the whole package was read
    assert cycles == []

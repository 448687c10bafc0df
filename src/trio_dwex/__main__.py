"""``python -m trio_dwex run MODULE:APP``: the same as the ``trio-dwex`` command."""

from .serving._cli import main

main()

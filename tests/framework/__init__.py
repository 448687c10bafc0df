"""Tests of the framework layer: declarations, plans, DI, pipeline, routing."""

"""Runnable examples; a package so that tests can import the entities they define."""

from __future__ import annotations

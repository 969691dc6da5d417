"""Airlock's connected-host side: specs, builds, registry pulls, fleet pushes.

from bundler.build import build_bundle
from bundler.spec import load_spec
"""

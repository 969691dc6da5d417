"""Airlock's connected-host side: ``airlock``.

Reads a release spec, pulls what it names from registries, signs, and
writes one bundle; verifies bundles the way devices do. The modules are named for what they do: spec (``airlock.yaml``),
model_check (a model and its golden data, read before signing),
artifacts (the OCI layout being assembled), pull (registry models and
images), cache (the pull cache), build (sign and write), verify, sign
and slot_rewrite (signatures added to a built bundle), cli and commands/ (one module per
``airlock`` command).

    from bundler.build.assemble import build_bundle
    from bundler.build.spec import load_spec
"""

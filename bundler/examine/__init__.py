"""Looking at bundles on the host: verify, inspect, diff; nothing is written.

* ``verify``      a whole bundle checked as a device would
* ``inspection``  what a bundle holds and will run, the whole archive read
* ``evidence``    carried upstream signatures, SBOM and provenance read back and re-checked
* ``package_changes``  image packages added, removed, changed between two SBOMs
* ``diff``        what changed between two releases, or an inventory and a release
* ``flag_bundles`` flags bundles (``airlock flags set``) verified, inspected, compared
* ``variant_matrix`` which variant of each model which device takes; what a bundle for some
  devices leaves out (``build --delta-from`` / ``--for-class``)

Example::

    from bundler.examine.verify import verify_bundle
"""

"""Airlock's connected-host side: ``airlock``.

Reads a release spec, pulls what it names from registries, checks the models
as devices will, signs, and writes one bundle; verifies bundles the way
devices do; carries them to sites and fleets. One folder per feature:

* ``build/``       ``airlock build``: the spec, pulls and the pull cache, the model check
  before signing, the OCI layout assembled, the output, agent kits
* ``signing/``     signatures added to a built bundle, the metadata slot rewritten in place
* ``examine/``     looking at bundles: verify, inspect, diff
* ``sneakernet/``  what travels on the stick: deltas against device inventories, split parts
* ``fleet/``       the site gateway: Ansible inventory, SSH, push, canary rollouts, flags sets
* ``hq/``          headquarters: device reports coming home, the fleet table and page
* ``cli``          the ``airlock`` command line (parser, handlers, exit mapping)
* ``signing_cli``  the signing and key-ceremony commands of ``airlock``
* ``fleet_cli``    ``airlock fleet hosts`` and ``airlock fleet rollout``
* ``report_cli``   ``airlock report``: device reports at headquarters

The four command-line modules are being split into one module per command
(``airlock.command``); this index names them while they are here.

    from bundler.build.assemble import build_bundle
    from bundler.build.spec import load_spec
"""

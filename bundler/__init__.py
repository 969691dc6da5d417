"""Airlock's connected-host side: ``airlock``.

Reads a release spec, pulls what it names from registries, checks the models
as devices will, signs, and writes one bundle; verifies bundles the way
devices do; carries them to sites and fleets. One folder per feature:

* ``commands/``    one module per ``airlock`` command, named in one registry
* ``build/``       ``airlock build``: the spec, pulls and the pull cache, the model check
  before signing, the OCI layout assembled, the output, agent kits
* ``signing/``     signatures added to a built bundle, the metadata slot rewritten in place
* ``examine/``     looking at bundles: verify, inspect, diff
* ``sneakernet/``  what travels on the stick: deltas against device inventories, split parts
* ``fleet/``       the site gateway: Ansible inventory, SSH, push, canary rollouts, flags sets
* ``hq/``          headquarters: device reports coming home, the fleet table and page
* ``cli``          the ``airlock`` command line: the registry, common options, exit mapping

    from bundler.build.assemble import build_bundle
    from bundler.build.spec import load_spec
"""

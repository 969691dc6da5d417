"""The agent itself: who it is, and replacing it with a newer one from a kit.

* ``identity``    version, platform, Python, the kit it came from
* ``selfupdate``    the transaction: a new agent beside the running one, self-check, switch, undo
* ``from_release``  a release carrying a kit for this device: checked, built, switched to
* ``kit_install``   install.sh's last step: link, systemd unit, init

Example::

    from agent.self.identity import identity

    print(identity()["version"])
"""

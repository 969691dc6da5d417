"""The agent itself: who it is, and replacing it with a newer one from a kit.

* ``identity``    version, platform, Python, the kit it came from
* ``selfupdate``  a new agent beside the running one: self-check, switch, rollback

Example::

    from agent.self.identity import identity

    print(identity()["version"])
"""

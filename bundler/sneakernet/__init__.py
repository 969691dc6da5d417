"""What travels on the stick: deltas against device inventories, split parts.

* ``device_inventories``  signed device inventories read strictly; ``plan_delta``
* ``split``               ``airlock split`` and ``airlock join``
* ``relay_source``        ``airlock serve``'s bundles, verified at start, blobs kept for the relay

Example::

    from bundler.sneakernet.device_inventories import plan_delta
"""

"""The site relay: verified releases served read-only over HTTP, to runtimes and devices.

A relay answers the OCI distribution-spec pull API (``/v2/``) and publishes
each release it holds as a bundle file (``/bundles/RELEASE-ID.airlock``). It
lives in the shared ground because both sides serve it the same way: a device
from the releases it kept (``airlock-agent serve --registry``), a host from a
bundle verified at start (``airlock serve``). It is never trusted: whoever
pulls verifies end to end (containerd by digest, a device by signature)::

    catalog = Catalog(held_releases, blob_file=lambda hex_: store / hex_)
    httpd = relay_server(("127.0.0.1", 9401), lambda: catalog, token=None)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

Modules:

* ``listener``     the bounded HTTP server: idle connections hold no thread, busy ones are few
* ``catalog``      what a relay holds: repositories, tags, manifests, blobs, bundles
* ``bundle_image`` a held release as its bundle file, byte ranges re-assembled from the store
* ``verified``     a blob is served only while its file is the one that matched its digest
* ``handler``      the HTTP routes: the pull API, ``/bundles/``, refusals of writes
"""

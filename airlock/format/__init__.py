"""The bundle on the wire: the tar, the OCI layout inside it, split parts, the kit's tar.

* ``oci``        the OCI vocabulary: media types, annotations, descriptors, digests, platforms
* ``bundle``     the one reader and writer of a bundle (release.json first, then the layout)
* ``parts``      split media: ``BUNDLE.part001…`` read as one stream, each part hashed
* ``kitarchive`` the agent kit's tar: ``kit.json`` first, every member checked

Example::

    from airlock.format.parts import open_media
    from airlock.format.bundle import BundleReader

    stream, size = open_media("vision-1.2.0.airlock")
    head = BundleReader(stream).head()   # signed metadata, not yet verified
"""

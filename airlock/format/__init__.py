"""The bundle on the wire: the tar, the OCI layout inside it, split parts, the kit's tar.

* ``oci``          the OCI vocabulary: media types, annotations, descriptors, digests, platforms
* ``bundle``       the format and its one reader: ``BundleReader``, ``head()``, each member checked
* ``writer``       the one writer (``write_bundle``), reproducible; ``FileStamp`` copies skip a rehash
* ``slot``         the metadata at the front: its paths and the padded slot a signature is added into
* ``hashing``      blobs hashed as they are read: pipelined, and on threads with positioned reads
* ``tar_bounds``   what tarfile may parse: bounded extended headers, regular members in the layout
* ``layout_check`` the OCI layout's references checked against what the bundle carries or expects
* ``parts``        split media: ``BUNDLE.part001…`` read as one stream, each part hashed
* ``kitarchive``   the agent kit's tar: ``kit.json`` first, every member checked
* ``ocicrypt``     layers encrypted as containers/ocicrypt does: AES-256-CTR + HMAC, keys as JWE

Example::

    from airlock.format.parts import open_media
    from airlock.format.bundle import BundleReader

    stream, size = open_media("vision-1.2.0.airlock")
    head = BundleReader(stream).head()   # signed metadata, not yet verified
"""

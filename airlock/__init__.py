"""Airlock's shared ground: what both sides of the air gap stand on.

It holds vocabulary and plumbing, never a decision, and imports nothing of
ours outside itself; ``keys`` (trust) stands on it, and ``bundler`` (host)
and ``agent`` (device) stand on both:

* ``errors``   one exception hierarchy; each class carries its exit code
* ``limits``   every size, count and depth bound, with the threat it answers
* ``oci``      the OCI vocabulary: media types, annotations, descriptors, digests
* ``bundle``   the one reader and writer of the bundle format (a tar of an OCI layout)
* ``registry`` the OCI registry client (oras-py), for the bundler's pulls and
  the agent's registry image sink
* ``registry_credentials`` a registry's credentials, found as ``docker pull`` finds them
* ``console``  what both command lines share: parser, one-line errors, output, bars

Example::

    from airlock.format.bundle import BundleReader

    reader = BundleReader(open("vision-1.2.0.airlock", "rb"))
    head = reader.head()          # signed metadata, not yet verified; keys.trust decides
"""

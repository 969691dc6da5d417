"""Airlock's shared ground: what both sides of the air gap stand on.

It imports nothing of ours outside itself; ``keys`` (trust) stands on it, and
``bundler`` (host) and ``agent`` (device) stand on both. It holds the code
both sides must run the same way, and that is more than vocabulary: the
bundle format, the model check whose verdict both sides act on (health,
evaluation, contracts, drift: the policy lives here so the host refuses
exactly what a device would), the pages, and the plumbing of files,
processes and commands. What to trust is decided in ``keys``; what to do
about it (sign, install, roll back) in ``bundler`` and ``agent``.

* ``format/``   the bundle on the wire: the tar, the OCI layout and vocabulary, split parts,
  the kit's tar
* ``quality/``  the model check both sides run: health, evaluation, input contracts, drift
* ``page/``     self-contained HTML and SVG: the device's status page, the fleet report
* ``relay/``    the site relay: verified releases as a read-only OCI registry and /bundles/,
  and the bounded HTTP listener it and ``serve`` answer on
* ``files``     durable writes: write-atomic, fsync of a directory, exclusive partial files
* ``command``   the one shape of a command for both tools: registry, module, typed result
* ``console``   what both command lines share: parser, one-line errors, output, progress
* ``errors``    one exception hierarchy; each class carries its exit code
* ``limits``    every size, count and depth bound, with the threat it answers
* ``durations`` ``30d``, ``12h``: durations as people write them
* ``spawn``     every child process: fixed directory, allowlisted environment, contained
* ``registry``  the OCI registry client (oras-py, the ``[registry]`` extra), for the
  bundler's pulls and the agent's registry image sink
* ``registry_credentials`` a registry's credentials, found as ``docker pull`` finds them

Example::

    from airlock.format.bundle import BundleReader

    reader = BundleReader(open("vision-1.2.0.airlock", "rb"))
    head = reader.head()          # signed metadata, not yet verified; keys.trust decides
"""

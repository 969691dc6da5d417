"""``airlock build`` and ``airlock check``: from a spec to one signed bundle file.

* ``spec``             ``airlock.yaml`` read strictly, every error naming field and line
* ``spec_yaml``        its YAML: a bounded shape first, then fields that name their line
* ``model_check``      a model and its golden data read before signing
* ``evaluation_check`` evaluation sets, labels and input contracts read before signing
* ``artifacts``        ``LayoutBuilder``: the OCI layout being assembled
* ``pull``, ``cache``  registry content, byte for byte, through the pull cache
* ``host_check``       the devices' health check on the assembled models
* ``encrypt``          ``--encrypt-to``: every image and model layer encrypted to named recipients
* ``assemble``         hash, check, sign, write ``NAME-VERSION.airlock``
* ``output``           where the bundler may write
* ``agentkit``         ``airlock agent-kit`` and a kit carried in a release
* ``starter``          ``airlock new``: a spec, a tiny model (``starter_files/``), golden data
* ``host_config``      the host's settings: flag > environment > ``airlock.toml`` > default
* ``project_wheel``    the project's own wheel for a kit, written without a build backend

Example::

    from bundler.build.assemble import build_bundle
    from bundler.build.spec import load_spec
"""

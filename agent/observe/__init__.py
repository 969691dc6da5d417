"""Watching and telling: serve, the drop folder, metrics, pages, status, reports.

* ``serve``          the long-running loop and its HTTP listener
* ``relay``          ``serve --registry``: the kept releases as a read-only site relay
* ``logfile``        ``serve --log FILE``: rotates itself, follows logrotate
* ``dropfolder``     what on a stick is ready, exactly once, result files
* ``drop_memory``    what the drop folder did, keyed by the verified release a drop carries
* ``metrics``        the Prometheus collector
* ``statuspage``     the page ``serve`` shows at ``/``
* ``status``         what ``airlock-agent status`` reports
* ``tally``          counters read from the journal
* ``sample_drift``   samples against the release's drift reference
* ``input_contract`` contract violations in the samples an application drops
* ``sample_pack``    the samples that matter, chosen within a budget, signed to carry home
* ``report``         the signed report that travels home
* ``inventory``      the signed inventory delta bundles are built against

Example::

    from agent.observe.status import status

    print(status(layout)["active"])
"""

"""Headquarters: device reports coming home, the fleet table and the fleet page.

* ``ingest``      enrolled device keys, verified reports, the fleet table and its textfile
* ``report_shape`` a report's fields read into one typed, bounded object before use
* ``fleet_page``  one self-contained HTML fleet report with plots over time
* ``sample_packs`` devices' signed sample packs checked whole and stored

Example::

    from bundler.hq.ingest import FleetRecords
"""

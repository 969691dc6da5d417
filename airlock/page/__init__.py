"""Self-contained HTML and SVG: the device's status page and the fleet report are made of these.

* ``webpage``  one page: inline CSS, a Content-Security-Policy that loads nothing, ``esc``
* ``charts``   hand-written SVG bars and lines, every label escaped

Example::

    from airlock.page.webpage import page, section

    html = page("cam-7", [section("Releases", "<p>none</p>")])
"""

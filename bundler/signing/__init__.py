"""Signatures added to a bundle after it was built.

* ``sign``          ``SigningSession``: what a signer is shown, signatures added or detached
* ``slot_rewrite``  the metadata slot rewritten in place behind an intent record

Example::

    from bundler.signing.sign import SigningSession
"""

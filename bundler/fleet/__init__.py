"""The site gateway reaching its devices over SSH: hosts, pushes, rollouts, flags.

* ``ansible_inventory``  the site's Ansible inventory
* ``ssh``                SSH connections with strict host keys (paramiko)
* ``push``               resumable, checked SFTP copies (``airlock fleet push``)
* ``rollout``            canary waves, halt and put back
* ``device_status``      a device's status answer read into one typed object before use
* ``flagset``            ``airlock flags set``: a signed feature-flags bundle

Example::

    from bundler.fleet.ansible_inventory import load_site
"""

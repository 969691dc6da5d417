"""The site gateway reaching its devices over SSH: hosts, pushes, rollouts, flags.

* ``ansible_inventory``  the site's Ansible inventory: its devices
* ``ansible_program``    ``ansible-inventory --list`` run as a program, when installed
* ``inventory_files``    the built-in reader: YAML or INI, ``group_vars/``, ``host_vars/``
* ``inventory_ini``      Ansible's INI format and host ranges (``cam[01:20]``)
* ``inventory_graph``    groups, hosts, variables merged as Ansible merges them
* ``ssh``                SSH connections with strict host keys (paramiko)
* ``push``               resumable, checked SFTP copies (``airlock fleet push``)
* ``rollout``            canary waves, halt and put back
* ``device_status``      a device's status answer read into one typed object before use
* ``flagset``            ``airlock flags set``: a signed feature-flags bundle

Example::

    from bundler.fleet.ansible_inventory import load_site
"""

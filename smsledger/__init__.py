"""The thin shell that ties the parts together: the ``smsledger`` command."""

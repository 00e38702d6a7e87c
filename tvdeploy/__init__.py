"""tvdeploy: one site file and one CLI from bare VMware to a running, verified, audited stack."""

__version__ = "0.1.0"

"""Data sets, loaded from standard files on disk; never downloaded, never faked."""

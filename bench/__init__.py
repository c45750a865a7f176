"""Benchmarks of sftp-inbox side by side with OpenSSH's ``internal-sftp`` chroot (issue 5).

``bench/run.sh`` installs what is needed and runs ``bench/compare.py``, which writes
``docs/BENCHMARKS.md``.
"""

"""`make bench`: movers3 against s5cmd, rclone and the AWS CLI on a private MariaDB and SeaweedFS on
loopback (see docs/benchmarks.md). Run `python -m tests.bench --help`."""

"""Suite-wide settings: ``policy serve`` processes the tests start stop without a drain delay.

SIGTERM normally keeps a server accepting calls for ``--drain-delay`` seconds (health
NOT_SERVING) before it stops; the tests that stop servers do not wait for load
balancers, so the delay is 0 for every subprocess they start (tests of the delay
itself pass ``--drain-delay`` explicitly).
"""

import os

os.environ["POLICY_DRAIN_DELAY"] = "0"

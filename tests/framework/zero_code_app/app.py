"""The unmodified application: no word of Chainsight. ``app.py [STATUS]`` exits with STATUS."""

import sys

import workload

workload.main()
print("argv:", sys.argv[1:])
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)

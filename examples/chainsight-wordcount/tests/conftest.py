# The chainsight_harness fixture (chainsight.testing is not loaded into every
# pytest run: a project opts in).
pytest_plugins = ["chainsight.testing"]

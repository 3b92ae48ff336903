"""A word count shared by restarting agents: a splitter, two counters and a merger.

Every process is a fresh instance on each start; ``driver.py`` kills them at random
and the job still ends with the exact count. See README.md.
"""

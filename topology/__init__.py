"""The Faust application: topics, agents, timers and web views.

Data flows one way: input topic → identity → profile agent → output topics → snapshots.
"""

"""The domain: profiles, conditions, segments, deliveries and journeys.

Pure Python: nothing in this package imports Kafka or Faust.
"""

"""The data flow, one step a module: events → identity → profile-inputs → profiles (segments,
deliveries, journeys) → output topics; wake-ups back into the profile's partition; snapshots for
the sidecar; definitions from their compacted topic; bad input to the dead letters."""

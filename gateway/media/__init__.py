"""Media for one call: SDP offer/answer, RTP (the only pyVoIP user) and pure audio helpers."""

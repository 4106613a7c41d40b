"""Lists kept in step with outside sources: subscribed URLs and files, vCard address books."""

"""The backup repository on disk: its layout and lock, objects, packs and manifests."""

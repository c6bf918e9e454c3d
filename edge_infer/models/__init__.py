"""Model files: finding and reading them, their TFLite metadata and labels, the runtime that opens
them, what their graphs cost, the zoo of known MobileNets, pulling and building them."""

"""The Chisel domain and web app: tastes, rounds, pairs, assignments and judgements."""

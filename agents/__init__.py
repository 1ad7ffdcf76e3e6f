"""The acting side: chat rendering (token-in/token-out), the tool-call format, generation
backends, chat backends and rollouts of sibling groups over env pools (local or Ray)."""

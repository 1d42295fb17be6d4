"""Studies of the method: a synthetic world with exact facts (world/) and a real small model on
real facts (real/). They import the library; only tools and tests import them."""

"""Code shared by the tests: servers, fake peers, fixed prices, test traffic. Not tests themselves."""

# The two commands: `make up` starts everything, `make test` runs every test on a fresh stack.
STACK := deploy/local/stack.sh

.PHONY: up down status logs clean test lint

up:
	@$(STACK) up

down:
	@$(STACK) down

status:
	@$(STACK) status

logs:
	@$(STACK) logs

clean:
	@$(STACK) clean

test:
	@scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

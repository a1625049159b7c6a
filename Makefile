# The two commands: `make up` starts everything, `make test` runs every test on a fresh stack.
STACK := deploy/local/stack.sh

.PHONY: up down status logs clean test lint bench fuzz-api chaos

up:
	@$(STACK) up

down:
	@$(STACK) down

# Then, once Kafka answers, each consumer group's members and the partitions each owns.
status:
	@out=$$($(STACK) status); status=$$?; echo "$$out"; \
	sagactl=$$(ls -t target/release/sagactl target/debug/sagactl 2>/dev/null | head -n 1); \
	if [ -n "$$sagactl" ] && echo "$$out" | grep -q '^kafka .*running'; then \
	  echo; $$sagactl topics --groups || true; \
	fi; exit $$status

logs:
	@$(STACK) logs

clean:
	@$(STACK) clean

test:
	@scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Schemathesis with 500 examples per operation (make test runs 25) against the running stack.
fuzz-api:
	EXAMPLES=$${EXAMPLES:-500} scripts/check-api.sh

# The benchmark against the stack `make up` started (release builds): one saga at a time first
# (on data the runs after it have not yet churned), peak (closed loop) with this machine's
# ceilings, once without the read side and once with it (what the fifth consumer costs), the
# open-loop latency run, and a rebuild of the read side from offset 0 (events per second).
# Reports land in bench/results/.
bench:
	cargo build --release --quiet -p sagactl
	deploy/local/stack.sh jaeger-wait
	target/release/sagactl bench --orders 200 --concurrency 1 --save bench/results
	deploy/local/stack.sh stop history
	target/release/sagactl bench --orders 10000 --concurrency 128 --save bench/results
	deploy/local/stack.sh up >/dev/null
	target/release/sagactl bench --orders 10000 --concurrency 128 --ceilings --save bench/results
	target/release/sagactl bench --rate 300 --duration 60 --save bench/results
	target/release/sagactl history rebuild

# The chaos soak for longer than make test runs it: CHAOS_SECONDS (default 600) of seeded random
# faults under load (CHAOS_SEED replays a schedule), then every promise checked. Starts the stack
# as make test does (debug builds with fault injection) if it is not running.
chaos:
	@scripts/chaos.sh

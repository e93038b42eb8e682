# Convenience targets; ./dev is the real entry point.
.PHONY: run test bench lab

run:
	./dev run

test:
	./dev test

bench:
	./dev bench $(ARGS)

lab:
	./dev lab

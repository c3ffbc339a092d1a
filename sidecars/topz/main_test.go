package main

import (
	"os"
	"os/signal"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

// TestMain lets the test binary double as the processes the tests need:
//   - TOPZ_TEST_MODE=sleep: an idle process whose arguments are whatever the test chose (secret-looking
//     ones), waiting for SIGTERM;
//   - TOPZ_TEST_MODE=main: the topz binary itself (main()), for the PID-namespace test.
func TestMain(m *testing.M) {
	switch os.Getenv("TOPZ_TEST_MODE") {
	case "sleep":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, os.Interrupt)
		<-c
		os.Exit(0)
	case "main":
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

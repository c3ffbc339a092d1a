package main

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain also plays the sidecar's GIT_ASKPASS role: git runs os.Executable() — the test binary here —
// with the prompt, exactly as it runs the sidecar's binary in production.
func TestMain(m *testing.M) {
	if isAskpass() {
		answer, err := askpass(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "askpass:", err)
			os.Exit(1)
		}
		fmt.Println(answer)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

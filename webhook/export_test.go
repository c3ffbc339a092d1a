package webhook

// PatchFor is patchFor, for the external tests that hold it to inject's contract.
var PatchFor = patchFor

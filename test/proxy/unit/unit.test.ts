// The sidecar's balancers and policies on their own, on a manual clock: no sockets, no real time.
// One test file for all of them on purpose: tap starts a process per file, and that start-up is most
// of what these take. Each module below is a group of tests (run one alone: npx tap FILE.ts).
import './balancers.ts';
import './tokenBucket.ts';
import './retryBudget.ts';
import './outlierDetector.ts';
import './deadlines.ts';

/** Process exit codes. The README's table is generated from this list; keep them stable. */
import type { ErrorCode } from '../errors/index.ts';

export const EXIT = {
  OK: 0,
  FATAL: 1,
  USAGE: 2,
  INCOMPLETE: 3,
  INTEGRITY: 4,
  NOT_FOUND: 5,
  NO_SPACE: 6,
  BACKEND: 7,
  TARGET: 8,
  REPO_NOT_FOUND: 10,
  LOCKED: 11,
  WRONG_PASSWORD: 12,
  REPO_EXISTS: 13,
  HOOK: 14,
  SERVER: 15,
  REFUSED: 16,
  TIMEOUT: 17,
  CLUSTER: 18,
  FORBIDDEN: 19,
  K8S_FAILED: 20,
  INTERRUPTED: 130,
} as const;

export const EXIT_DOC: [number, string][] = [
  [EXIT.OK, 'success'],
  [EXIT.FATAL, 'unexpected fatal error (a bug, or an error with no more specific code)'],
  [EXIT.USAGE, 'bad command line: unknown flag or command, missing argument, no password given'],
  [EXIT.INCOMPLETE, 'backup finished but some files could not be read: the snapshot was saved and is marked incomplete'],
  [EXIT.INTEGRITY, 'damaged or missing data: check found errors, restore could not restore or verify some files (they are named), a drill could not restore its snapshot intact, repair packs left packs it could not rebuild, or testbed verify found a service unhealthy or acknowledged writes lost'],
  [EXIT.NOT_FOUND, 'a snapshot (drill: of the policy), key, pack, source path, --include path, --exclude-file, policy file, policy or the S3 bucket of --repo does not exist, a program the command needs is not installed (the message names its Debian package), or the lab is not part of this installation'],
  [EXIT.NO_SPACE, 'no space left on the device holding the repository or the restore target'],
  [EXIT.BACKEND, 'the storage backend failed (I/O error, permission denied)'],
  [EXIT.TARGET, "the restore target cannot be written, or a drill's target is not empty"],
  [EXIT.REPO_NOT_FOUND, 'no repository at the given location'],
  [EXIT.LOCKED, 'the repository is locked by another process (or this command lost its lock and stopped before saving its snapshot)'],
  [EXIT.WRONG_PASSWORD, 'wrong password: no key of the repository opens with it'],
  [EXIT.REPO_EXISTS, 'init: a repository already exists there'],
  [EXIT.HOOK, "run: a hook of the policy failed (exited non-zero, was killed after its timeout, or could not be started; an HTTP hook got no 2xx answer in time), or a preset did (postgres, fsfreeze, btrfs-snapshot, redis: the message says what and why; no snapshot was saved); the on-error hooks ran; drill: the drill's check failed"],
  [EXIT.SERVER, 'trigger: the meshback server cannot be reached (connection refused, timed out, untrusted TLS certificate), answered what is not its API, or stopped during the run'],
  [EXIT.REFUSED, 'trigger: the server refused the trigger: missing or wrong token (401), too many requests (429), the policy is running (409), or the server is stopping (503)'],
  [EXIT.TIMEOUT, 'trigger --wait: the run did not end within --timeout (it goes on on the server)'],
  [EXIT.CLUSTER, 'k8s: no Kubernetes API server reachable (connection refused, timed out, an error answer), or no cluster configured (--kubeconfig, KUBECONFIG, ~/.kube/config, in a pod)'],
  [EXIT.FORBIDDEN, 'k8s: the Kubernetes API server refused a request: RBAC forbids it (the message names the verb and resource to grant) or the credentials (401)'],
  [EXIT.K8S_FAILED, 'k8s restore: the VolumeRestore ended Failed in the cluster (the message gives its reason: SnapshotTimeout, NoAgent, AgentLost, RestoreFailed, ...) or did not end within --timeout'],
  [EXIT.INTERRUPTED, 'interrupted (SIGINT/SIGTERM; server: a run did not end within --grace, or a second signal came); nothing already stored is lost'],
];

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'USAGE':
    case 'NO_PASSWORD':
      return EXIT.USAGE;
    case 'REPO_NOT_FOUND':
      return EXIT.REPO_NOT_FOUND;
    case 'REPO_EXISTS':
      return EXIT.REPO_EXISTS;
    case 'WRONG_PASSWORD':
      return EXIT.WRONG_PASSWORD;
    case 'NOT_FOUND':
      return EXIT.NOT_FOUND;
    case 'INTEGRITY':
      return EXIT.INTEGRITY;
    case 'NO_SPACE':
      return EXIT.NO_SPACE;
    case 'BACKEND':
      return EXIT.BACKEND;
    case 'LOCKED':
      return EXIT.LOCKED;
    case 'TARGET':
      return EXIT.TARGET;
    case 'HOOK':
      return EXIT.HOOK;
    case 'INCOMPLETE':
      return EXIT.INCOMPLETE;
    case 'SERVER':
      return EXIT.SERVER;
    case 'REFUSED':
      return EXIT.REFUSED;
    case 'TIMEOUT':
      return EXIT.TIMEOUT;
    case 'CLUSTER':
      return EXIT.CLUSTER;
    case 'FORBIDDEN':
      return EXIT.FORBIDDEN;
    case 'K8S_FAILED':
      return EXIT.K8S_FAILED;
    default:
      return EXIT.FATAL;
  }
}

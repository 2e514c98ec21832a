// The bearer token of a kubeconfig user, for `shoal get`: discover hands it to a TokenReview and
// authorizes its holder with a SubjectAccessReview. A token, a token file, an exec plugin or an
// auth provider all yield one (through client-node, as for the API server); a client certificate
// does not: it proves who you are only in a TLS handshake with the API server itself.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';

export interface KubeconfigChoice {
  /** --kubeconfig: '' means $KUBECONFIG (its files merged, as kubectl does), then ~/.kube/config. */
  file: string;
  /** --context: '' means the kubeconfig's current context. */
  context: string;
}

export interface KubeconfigToken {
  token: string;
  /** What to name in messages: the user, the context and the file. */
  where: string;
}

/** Which kubeconfig files CHOICE means, or an error saying why there is none. */
function kubeconfigFiles(file: string): string[] {
  if (file !== '') {
    if (!existsSync(file)) throw new Error(`--kubeconfig ${JSON.stringify(file)} does not exist`);
    return [file];
  }
  const env = (process.env.KUBECONFIG ?? '').split(':').filter((f) => f !== '');
  if (env.length > 0) {
    const present = env.filter((f) => existsSync(f));
    if (present.length === 0) throw new Error(`no file of $KUBECONFIG (${env.join(':')}) exists`);
    return present;
  }
  const home = join(homedir(), '.kube', 'config');
  if (!existsSync(home)) throw new Error(`no kubeconfig: --kubeconfig not given, $KUBECONFIG not set and ${home} does not exist`);
  return [home];
}

/**
 * The user's `tokenFile` (client-node reads only a `token-file` key that kubectl never writes), resolved
 * against its kubeconfig's folder as kubectl does; '' when it has none. The first file naming the user wins.
 */
function tokenFileOf(files: string[], userName: string): string {
  for (const f of files) {
    const users =
      (parseYaml(readFileSync(f, 'utf8')) as { users?: Array<{ name?: string; user?: { tokenFile?: string } }> } | null)?.users ?? [];
    const u = users.find((x) => x.name === userName);
    if (u) return u.user?.tokenFile ? resolve(dirname(f), u.user.tokenFile) : '';
  }
  return '';
}

/**
 * The bearer token of the chosen kubeconfig context's user. Throws an Error saying what is wrong
 * and what to do: no kubeconfig, an unknown context, a user with only a client certificate (or a
 * password), impersonation, a failing exec plugin.
 */
export async function kubeconfigToken(choice: KubeconfigChoice): Promise<KubeconfigToken> {
  const files = kubeconfigFiles(choice.file);
  // Loaded only here: client-node takes a second to import.
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  for (const [i, f] of files.entries()) {
    try {
      if (i === 0) kc.loadFromFile(f);
      else {
        const more = new KubeConfig();
        more.loadFromFile(f);
        // As kubectl merges: the first file naming a cluster, user or context wins, and the first current-context
        // (client-node's mergeConfig throws on a name seen twice instead).
        for (const c of more.clusters) if (!kc.getCluster(c.name)) kc.addCluster(c);
        for (const u of more.users) if (!kc.getUser(u.name)) kc.addUser(u);
        for (const x of more.contexts) if (!kc.getContextObject(x.name)) kc.addContext(x);
        if (!kc.currentContext && more.currentContext) kc.setCurrentContext(more.currentContext);
      }
    } catch (err) {
      throw new Error(`cannot load kubeconfig ${f}: ${(err as Error).message}`, { cause: err });
    }
  }
  const fileNames = files.join(':');
  const context = choice.context || kc.getCurrentContext();
  if (!context)
    throw new Error(
      `kubeconfig ${fileNames} has no current context: pass --context (one of: ${
        kc
          .getContexts()
          .map((c) => c.name)
          .join(', ') || 'none'
      })`,
    );
  if (!kc.getContextObject(context))
    throw new Error(
      `kubeconfig ${fileNames} has no context ${JSON.stringify(context)} (it has: ${
        kc
          .getContexts()
          .map((c) => c.name)
          .join(', ') || 'none'
      })`,
    );
  kc.setCurrentContext(context);
  const user = kc.getCurrentUser();
  const where = `kubeconfig user ${JSON.stringify(user?.name ?? '')} (context ${JSON.stringify(context)} in ${fileNames})`;
  if (!user) throw new Error(`${where} is not defined in the kubeconfig`);
  if (user.impersonateUser) {
    throw new Error(
      `${where} impersonates ${JSON.stringify(user.impersonateUser)} (as:): discover would see the user behind it, not the one impersonated, so shoal get refuses; use a context without impersonation`,
    );
  }
  // As in client-go, a token file wins over an inline token (it is what gets rotated).
  const tokenFile = tokenFileOf(files, user.name);
  if (tokenFile !== '') {
    let token: string;
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      throw new Error(`cannot read the tokenFile of ${where}: ${(err as Error).message}`, { cause: err });
    }
    if (token === '') throw new Error(`the tokenFile ${tokenFile} of ${where} is empty`);
    return { token, where };
  }
  const opts: { headers: Record<string, string> } = { headers: {} };
  try {
    await kc.applyToHTTPSOptions(opts);
  } catch (err) {
    throw new Error(`cannot get a token for ${where}: ${(err as Error).message.trim() || 'its credential plugin failed'}`, { cause: err });
  }
  const auth = opts.headers.Authorization ?? opts.headers.authorization ?? '';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
  if (m) return { token: m[1], where };
  const todo =
    "get a token and pass it with --token-file: a service account's (kubectl create token NAME -n NAMESPACE --duration 1h > token; NAME needs get on the app's ConfigMap shoal-mesh-APP), or use a kubeconfig user with a token, a token file or an exec plugin";
  if (user.certData || user.certFile) {
    throw new Error(
      `${where} signs in with a client certificate only, which discover cannot check: a certificate proves who you are in the TLS handshake with the API server, and discover gets plain HTTP requests it can only verify by handing a bearer token to a TokenReview. To read with shoal get, ${todo}`,
    );
  }
  if (user.username)
    throw new Error(`${where} has a username and password, which discover cannot check (the API server has no review for them); ${todo}`);
  throw new Error(`${where} has no credential: ${todo}`);
}

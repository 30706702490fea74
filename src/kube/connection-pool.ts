/**
 * Keep-alive connections to the Kubernetes API for one-shot requests.
 *
 * client-node 1.4's `KubeConfig.applySecurityAuthentication` builds a new `https.Agent` (keep-alive
 * off) for every request, so every GET, apply and create opened its own TCP connection and did its
 * own TLS handshake: three per restore, and one per Event, discovery request and reconciler write.
 * Here the per-request agent is swapped for a shared keep-alive agent built from the same options
 * (CA, client certificate and key, server name, verification), so requests with the same TLS
 * identity reuse connections, as client-go's transport does.
 *
 * Only one-shot requests come through here (withDeadline's middleware, used by get-json.ts,
 * cluster-client.ts and the version check). WATCH streams keep their per-request agents: the
 * watched caches end a stream by destroying its agent, which must not take other requests' sockets
 * with it.
 *
 * Agents are keyed by their TLS options, so a rotated client certificate (exec plugin, reloaded
 * kubeconfig) gets a fresh agent; the older ones are closed once idle, and at most a few are kept.
 * Proxy agents (cluster.proxyUrl) are left as they are: they are not plain http(s).Agents.
 */
import { createHash } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'

/** Sockets per agent: the admission path makes a few requests at a time; the reconciler queues. */
const MAX_SOCKETS = 16
/**
 * Idle sockets are closed by us after this, before kube-apiserver closes them (its http.Server
 * IdleTimeout is 90 s): a request sent on a socket the server is closing at that moment fails.
 * Longer than the 60 s between rediscoveries, so those reuse a connection too.
 */
const IDLE_TIMEOUT_MS = 75_000
/** Distinct TLS identities kept at once (a rotation makes a second one for a while). */
const MAX_AGENTS = 4

/** The agent options that decide which server and identity a connection belongs to. */
const IDENTITY_FIELDS = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername', 'ciphers', 'crl', 'secureProtocol'] as const

export interface ConnectionPoolStats {
  /** Agents created since start (one per TLS identity seen, plus replacements). */
  agentsCreated: number
  /** Requests whose agent was swapped for a pooled one. */
  requestsPooled: number
}

export class ConnectionPool {
  private readonly agents = new Map<string, http.Agent>()
  readonly stats: ConnectionPoolStats = { agentsCreated: 0, requestsPooled: 0 }

  /** The pooled agent for a request whose own agent is `agent`; anything else is returned as is. */
  agentFor(agent: http.Agent | https.Agent | undefined): http.Agent | https.Agent | undefined {
    if (!agent) return agent
    // Exact classes only: proxy agents subclass http.Agent but route elsewhere.
    const secure = agent.constructor === https.Agent
    if (!secure && agent.constructor !== http.Agent) return agent
    const options = (agent as http.Agent & { options?: Record<string, unknown> }).options ?? {}
    const key = identityKey(secure, options)
    let pooled = this.agents.get(key)
    if (!pooled) {
      const base: Record<string, unknown> = {}
      for (const f of IDENTITY_FIELDS) if (options[f] !== undefined) base[f] = options[f]
      const keepAlive = { keepAlive: true, maxSockets: MAX_SOCKETS, maxFreeSockets: MAX_SOCKETS, timeout: IDLE_TIMEOUT_MS, scheduling: 'lifo' as const }
      pooled = secure ? new https.Agent({ ...base, ...keepAlive }) : new http.Agent(keepAlive)
      this.agents.set(key, pooled)
      this.stats.agentsCreated++
      this.evict()
    } else {
      // Most recently used last, so eviction takes the oldest identity.
      this.agents.delete(key)
      this.agents.set(key, pooled)
    }
    this.stats.requestsPooled++
    return pooled
  }

  /**
   * Close every pooled connection. Not needed at shutdown (idle pooled sockets do not keep the
   * process alive); for tests that count open sockets.
   */
  destroy(): void {
    for (const agent of this.agents.values()) agent.destroy()
    this.agents.clear()
  }

  private evict(): void {
    while (this.agents.size > MAX_AGENTS) {
      const [oldestKey, oldest] = this.agents.entries().next().value as [string, http.Agent]
      this.agents.delete(oldestKey)
      // Requests in flight keep their sockets; idle ones close now and nothing new is pooled here.
      for (const sockets of Object.values(oldest.freeSockets)) for (const s of sockets ?? []) s.destroy()
    }
  }
}

function identityKey(secure: boolean, options: Record<string, unknown>): string {
  const hash = createHash('sha256').update(secure ? 'https' : 'http')
  for (const f of IDENTITY_FIELDS) {
    const v = options[f]
    hash.update(`\0${f}=`)
    if (v === undefined) continue
    for (const part of Array.isArray(v) ? v : [v]) hash.update(Buffer.isBuffer(part) ? part : String(part)).update('\0')
  }
  return hash.digest('hex')
}

/** The process-wide pool: one per process, like client-go's shared transport cache. */
export const apiConnections = new ConnectionPool()

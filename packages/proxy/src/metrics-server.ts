import { createRoleMetrics, registerSecurityMetrics, startMetricsServer, type FtvmEvents, type StatusPeer } from '@ftvm/metrics';

export interface ProxyMetricsServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/**
 * /metrics, /healthz, /readyz and the status page for the proxy, fed by its event bus.
 * Must start before the runtime emits its first event so level metrics start right.
 */
export async function startProxyMetrics(events: FtvmEvents, port: number, host: string, peers?: readonly StatusPeer[], insecure = false): Promise<ProxyMetricsServer> {
  const metrics = createRoleMetrics('proxy', events);
  registerSecurityMetrics(metrics.registry, { insecure });
  try {
    const server = await startMetricsServer({ port, host, metrics, peers });
    return {
      port: server.port,
      url: server.url,
      close: async () => {
        await server.close();
        metrics.close();
      },
    };
  } catch (e) {
    metrics.close();
    throw e;
  }
}

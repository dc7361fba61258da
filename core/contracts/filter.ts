/**
 * The one filter spec every tap understands. Each {@link TapDriver} translates it to its
 * own syntax (a BPF expression for libpcap and tcpdump, a predicate for file taps).
 * All fields are optional; present fields are ANDed, list entries ORed.
 */
export interface FilterSpec {
  /** Hosts (IPv4/IPv6 address) or networks (CIDR) that must be one end of the packet. */
  hosts?: string[];
  /** TCP/UDP ports that must be one end of the packet; `"5000-5999"` ranges allowed. */
  ports?: Array<number | string>;
  /**
   * Application protocols to keep. `rtsp` = TCP 554/8554 (+ `rtspPorts`), `http`/`onvif` =
   * TCP 80/8080 (+ `httpPorts`), `rtp`/`rtcp` = UDP (RTP ports are negotiated, so a
   * kernel filter can only keep UDP; the pipeline classifies).
   */
  protocols?: Array<'rtp' | 'rtcp' | 'rtsp' | 'http' | 'onvif'>;
  /** Only traffic from (`src`) or to (`dst`) the `hosts`; default both. */
  direction?: 'src' | 'dst' | 'both';
  /** Inventory names of cameras or VMSs, resolved to their addresses before translation. */
  cameras?: string[];
  vms?: string[];
  /** Extra RTSP/HTTP ports for `protocols`. */
  rtspPorts?: number[];
  httpPorts?: number[];
  /** Raw native filter appended with `and (...)` by drivers that have one (escape hatch). */
  raw?: string;
}

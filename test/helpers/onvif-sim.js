#!/usr/bin/env node
// Minimal ONVIF Profile-S device simulator (no dependencies). No ONVIF *server*
// exists on npm (only clients: onvif, node-onvif, node-onvif-ts) or in Debian
// (libonvif/onvif-tools are clients), so this stub is ours; it is verified
// against the real npm 'onvif' client (agsh) by onvif_client_check.js.
//
//   node onvif_sim.js --port 8080 --bind 127.0.0.1 --rtsp rtsp://127.0.0.1:8554/stream1 \
//        [--user admin --password secret] [--log requests.jsonl]
//
// Endpoints (SOAP 1.2 over HTTP POST):
//   /onvif/device_service : GetSystemDateAndTime, GetCapabilities, GetServices,
//                           GetDeviceInformation, GetScopes, GetHostname, GetNetworkInterfaces
//   /onvif/media_service  : GetProfiles, GetProfile, GetVideoSources, GetStreamUri, GetSnapshotUri,
//                           GetVideoEncoderConfigurations, GetVideoEncoderConfiguration,
//                           SetVideoEncoderConfiguration (stored, reflected by Get*)
// Anything else -> SOAP Fault ter:ActionNotSupported (HTTP 400).
// WS-UsernameToken (PasswordDigest or PasswordText) is checked when --user is given
// (GetSystemDateAndTime is allowed unauthenticated, as on real cameras).
// Every request is appended to --log as JSON (time, path, action, body) so tests can
// assert what a VMS (or a failover replay) sent.
//
// camtap copy: taken from the lab's /work/shared/lab/onvif/onvif_sim.js so the project
// stands alone. Only change: CommonJS require() turned into ESM imports, because this
// package is "type": "module" and a .js file here loads as ESM. Behaviour is unchanged.
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const PORT = +(args.port || 8080), BIND = args.bind || '127.0.0.1';
const RTSP = args.rtsp || 'rtsp://127.0.0.1:8554/stream1';
const BASE = `http://${BIND}:${PORT}`;
const state = { width: +(args.width || 640), height: +(args.height || 360), fps: +(args.fps || 25),
  bitrate: +(args.bitrate || 512), gov: 50, encoding: 'H264', quality: 5 };

const NS = 'xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" ' +
  'xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema" ' +
  'xmlns:ter="http://www.onvif.org/ver10/error"';
const env = (body) => `<?xml version="1.0" encoding="UTF-8"?>\n<s:Envelope ${NS}><s:Body>${body}</s:Body></s:Envelope>`;
const fault = (code, sub, text) => env(`<s:Fault><s:Code><s:Value>s:${code}</s:Value><s:Subcode><s:Value>${sub}</s:Value>` +
  `</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">${text}</s:Text></s:Reason></s:Fault>`);

const vsc = () => `<tt:VideoSourceConfiguration token="vsc_1"><tt:Name>vsc_1</tt:Name><tt:UseCount>1</tt:UseCount>` +
  `<tt:SourceToken>vs_1</tt:SourceToken><tt:Bounds x="0" y="0" width="${state.width}" height="${state.height}"/></tt:VideoSourceConfiguration>`;
const vec = (tag = 'tt:VideoEncoderConfiguration') => `<${tag} token="vec_1"><tt:Name>vec_1</tt:Name><tt:UseCount>1</tt:UseCount>` +
  `<tt:Encoding>${state.encoding}</tt:Encoding><tt:Resolution><tt:Width>${state.width}</tt:Width><tt:Height>${state.height}</tt:Height></tt:Resolution>` +
  `<tt:Quality>${state.quality}</tt:Quality><tt:RateControl><tt:FrameRateLimit>${state.fps}</tt:FrameRateLimit>` +
  `<tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>${state.bitrate}</tt:BitrateLimit></tt:RateControl>` +
  `<tt:H264><tt:GovLength>${state.gov}</tt:GovLength><tt:H264Profile>Baseline</tt:H264Profile></tt:H264>` +
  `<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port>` +
  `<tt:TTL>1</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast><tt:SessionTimeout>PT60S</tt:SessionTimeout></${tag}>`;
const profile = (tag) => `<${tag} token="profile_1" fixed="true"><tt:Name>mainStream</tt:Name>${vsc()}${vec()}</${tag}>`;

const handlers = {
  GetSystemDateAndTime: () => {
    const d = new Date();
    return `<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType>` +
      `<tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone><tt:UTCDateTime>` +
      `<tt:Time><tt:Hour>${d.getUTCHours()}</tt:Hour><tt:Minute>${d.getUTCMinutes()}</tt:Minute><tt:Second>${d.getUTCSeconds()}</tt:Second></tt:Time>` +
      `<tt:Date><tt:Year>${d.getUTCFullYear()}</tt:Year><tt:Month>${d.getUTCMonth() + 1}</tt:Month><tt:Day>${d.getUTCDate()}</tt:Day></tt:Date>` +
      `</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>`;
  },
  GetCapabilities: () => `<tds:GetCapabilitiesResponse><tds:Capabilities>` +
    `<tt:Device><tt:XAddr>${BASE}/onvif/device_service</tt:XAddr><tt:System><tt:DiscoveryResolve>false</tt:DiscoveryResolve>` +
    `<tt:DiscoveryBye>false</tt:DiscoveryBye><tt:RemoteDiscovery>false</tt:RemoteDiscovery><tt:SystemBackup>false</tt:SystemBackup>` +
    `<tt:SystemLogging>false</tt:SystemLogging><tt:FirmwareUpgrade>false</tt:FirmwareUpgrade>` +
    `<tt:SupportedVersions><tt:Major>2</tt:Major><tt:Minor>0</tt:Minor></tt:SupportedVersions></tt:System></tt:Device>` +
    `<tt:Media><tt:XAddr>${BASE}/onvif/media_service</tt:XAddr><tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>` +
    `<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>` +
    `</tds:Capabilities></tds:GetCapabilitiesResponse>`,
  GetServices: () => `<tds:GetServicesResponse>` +
    `<tds:Service><tds:Namespace>http://www.onvif.org/ver10/device/wsdl</tds:Namespace><tds:XAddr>${BASE}/onvif/device_service</tds:XAddr>` +
    `<tds:Version><tt:Major>2</tt:Major><tt:Minor>0</tt:Minor></tds:Version></tds:Service>` +
    `<tds:Service><tds:Namespace>http://www.onvif.org/ver10/media/wsdl</tds:Namespace><tds:XAddr>${BASE}/onvif/media_service</tds:XAddr>` +
    `<tds:Version><tt:Major>2</tt:Major><tt:Minor>0</tt:Minor></tds:Version></tds:Service></tds:GetServicesResponse>`,
  GetDeviceInformation: () => `<tds:GetDeviceInformationResponse><tds:Manufacturer>LabKit</tds:Manufacturer>` +
    `<tds:Model>SimCam-1</tds:Model><tds:FirmwareVersion>0.1</tds:FirmwareVersion><tds:SerialNumber>SIM${PORT}</tds:SerialNumber>` +
    `<tds:HardwareId>gst-rtsp-server</tds:HardwareId></tds:GetDeviceInformationResponse>`,
  GetScopes: () => `<tds:GetScopesResponse><tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>onvif://www.onvif.org/Profile/Streaming</tt:ScopeItem></tds:Scopes>` +
    `<tds:Scopes><tt:ScopeDef>Configurable</tt:ScopeDef><tt:ScopeItem>onvif://www.onvif.org/name/SimCam</tt:ScopeItem></tds:Scopes></tds:GetScopesResponse>`,
  GetHostname: () => `<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP><tt:Name>simcam</tt:Name></tds:HostnameInformation></tds:GetHostnameResponse>`,
  GetNetworkInterfaces: () => `<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0"><tt:Enabled>true</tt:Enabled>` +
    `<tt:IPv4><tt:Enabled>true</tt:Enabled><tt:Config><tt:Manual><tt:Address>${BIND}</tt:Address><tt:PrefixLength>24</tt:PrefixLength></tt:Manual>` +
    `<tt:DHCP>false</tt:DHCP></tt:Config></tt:IPv4></tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>`,
  GetProfiles: () => `<trt:GetProfilesResponse>${profile('trt:Profiles')}</trt:GetProfilesResponse>`,
  GetProfile: () => `<trt:GetProfileResponse>${profile('trt:Profile')}</trt:GetProfileResponse>`,
  GetVideoSources: () => `<trt:GetVideoSourcesResponse><trt:VideoSources token="vs_1"><tt:Framerate>${state.fps}</tt:Framerate>` +
    `<tt:Resolution><tt:Width>${state.width}</tt:Width><tt:Height>${state.height}</tt:Height></tt:Resolution></trt:VideoSources></trt:GetVideoSourcesResponse>`,
  GetStreamUri: () => `<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>${RTSP}</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>` +
    `<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>`,
  GetSnapshotUri: () => `<trt:GetSnapshotUriResponse><trt:MediaUri><tt:Uri>${BASE}/snapshot.jpg</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>` +
    `<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetSnapshotUriResponse>`,
  GetVideoEncoderConfigurations: () => `<trt:GetVideoEncoderConfigurationsResponse>${vec('trt:Configurations')}</trt:GetVideoEncoderConfigurationsResponse>`,
  GetVideoEncoderConfiguration: () => `<trt:GetVideoEncoderConfigurationResponse>${vec('trt:Configuration')}</trt:GetVideoEncoderConfigurationResponse>`,
  SetVideoEncoderConfiguration: (body) => {
    const g = (t) => { const m = new RegExp(`<(?:\\w+:)?${t}>([^<]*)<`).exec(body); return m && m[1]; };
    for (const [k, t] of [['width', 'Width'], ['height', 'Height'], ['fps', 'FrameRateLimit'], ['bitrate', 'BitrateLimit'], ['gov', 'GovLength']]) {
      const v = g(t); if (v !== null) state[k] = +v;
    }
    const e = g('Encoding'); if (e) state.encoding = e;
    return `<trt:SetVideoEncoderConfigurationResponse/>`;
  },
};

function checkAuth(xml) {
  if (!args.user) return true;
  const u = /<(?:\w+:)?Username>([^<]*)</.exec(xml), p = /<(?:\w+:)?Password([^>]*)>([^<]*)</.exec(xml);
  if (!u || !p || u[1] !== args.user) return false;
  if (/PasswordText/.test(p[1])) return p[2] === args.password;
  const nonce = /<(?:\w+:)?Nonce[^>]*>([^<]*)</.exec(xml), created = /<(?:\w+:)?Created[^>]*>([^<]*)</.exec(xml);
  if (!nonce || !created) return false;
  const dig = crypto.createHash('sha1').update(Buffer.concat([Buffer.from(nonce[1], 'base64'),
    Buffer.from(created[1]), Buffer.from(args.password)])).digest('base64');
  return dig === p[2];
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const xml = Buffer.concat(chunks).toString('utf8');
    const m = /<(?:\w+:)?Body[^>]*>\s*<(?:(\w+):)?(\w+)/.exec(xml);
    const action = m ? m[2] : null;
    if (args.log) fs.appendFileSync(args.log, JSON.stringify({ t: Date.now() / 1000, path: req.url, action, body: xml }) + '\n');
    let status = 200, out;
    if (req.method !== 'POST' || !action) { status = 400; out = fault('Sender', 'ter:InvalidArgVal', 'not a SOAP request'); }
    else if (!handlers[action]) { status = 400; out = fault('Receiver', 'ter:ActionNotSupported', `${action} not supported`); }
    else if (action !== 'GetSystemDateAndTime' && !checkAuth(xml)) { status = 400; out = fault('Sender', 'ter:NotAuthorized', 'Sender not Authorized'); }
    else out = env(handlers[action](xml));
    res.writeHead(status, { 'Content-Type': 'application/soap+xml; charset=utf-8', 'Content-Length': Buffer.byteLength(out) });
    res.end(out);
  });
});
server.listen(PORT, BIND, () => console.log(`onvif sim ready: ${BASE}/onvif/device_service -> ${RTSP}`));
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => server.close(() => process.exit(0)));

// A real OpenID Connect provider for the console's browser tests: the certified `oidc-provider`
// package, on 127.0.0.1 only, with its development login and consent pages (any password; the
// account is the login name). Configured from the environment by tests/e2e/test_console_oidc.py:
//   OIDC_PORT, OIDC_REDIRECT_URIS, OIDC_POST_LOGOUT_URIS (comma-separated), OIDC_ACCOUNTS (JSON
//   {name: {groups: [...]}}), OIDC_ID_TOKEN_TTL_S.
// Two confidential clients: "hitl-console" (the console) and "other-app" (another application of
// the same provider, whose codes and tokens the console must refuse).
import Provider from "oidc-provider";

const port = Number(process.env.OIDC_PORT || 9400);
const issuer = `http://127.0.0.1:${port}`;
const redirectUris = (process.env.OIDC_REDIRECT_URIS || "").split(",").filter(Boolean);
const postLogoutUris = (process.env.OIDC_POST_LOGOUT_URIS || "").split(",").filter(Boolean);
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || "{}");

const client = (id) => ({
  client_id: id, client_secret: `${id}-secret`, redirect_uris: redirectUris,
  post_logout_redirect_uris: postLogoutUris, grant_types: ["authorization_code"], response_types: ["code"],
  token_endpoint_auth_method: "client_secret_basic",
});

const provider = new Provider(issuer, {
  clients: [client("hitl-console"), client("other-app")],
  scopes: ["openid", "profile", "groups"],
  claims: { openid: ["sub"], profile: ["preferred_username", "name"], groups: ["groups"] },
  async findAccount(_ctx, id) {
    if (!accounts[id]) return undefined;
    return {
      accountId: id,
      async claims() { return { sub: id, preferred_username: id, name: id, groups: accounts[id].groups || [] }; },
    };
  },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  cookies: { keys: ["e2e-only-cookie-key-0123456789"] },
  ttl: { IdToken: Number(process.env.OIDC_ID_TOKEN_TTL_S || 3600) },
});
provider.proxy = false;
provider.listen(port, "127.0.0.1", () => { console.log(`oidc-provider ready at ${issuer}`); });
